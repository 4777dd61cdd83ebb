from layotto.server.cli import main

raise SystemExit(main())
