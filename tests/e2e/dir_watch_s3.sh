#!/usr/bin/env bash
# dir_watch.sh on S3 (moto).
KIND=s3 exec bash "$(dirname "$0")/dir_watch.sh"
