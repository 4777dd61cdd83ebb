"""Create a bucket on an S3-compatible server unless it exists (moto keeps buckets in memory, so a
restarted server has none): the conformance backends run's s3 file store needs its bucket at start.

    python scripts/s3_bucket.py http://127.0.0.1:9000 layotto-conformance
"""

from __future__ import annotations

import sys

import botocore.session
from botocore.exceptions import ClientError

EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(__doc__ or "")
        return 2
    endpoint, bucket = argv
    client = botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test"
    )
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in EXISTS:
            raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
