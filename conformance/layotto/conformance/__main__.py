from layotto.conformance.cli import main

raise SystemExit(main())
