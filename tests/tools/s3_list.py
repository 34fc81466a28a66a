#!/usr/bin/env python3
"""Lists a bucket of the S3 test servers (moto, s3rver) with unsigned
ListObjectsV2 requests, every page: as `aws s3api list-objects-v2 --output
json` prints it ({"Contents": [{"Key", "LastModified", "Size"}, ...]}), or
with --keys one key a line.  For tests that poll a listing: the AWS CLI
takes seconds of CPU to start, each time.

usage: s3_list.py [--keys] ENDPOINT BUCKET [PREFIX]
"""
import json
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


def local(tag):
    return tag.rsplit("}", 1)[-1]


def main():
    args = sys.argv[1:]
    keys_only = bool(args) and args[0] == "--keys"
    if keys_only:
        args = args[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[-1])
    endpoint, bucket = args[0].rstrip("/"), args[1]
    prefix = args[2] if len(args) == 3 else ""
    contents, token = [], None
    while True:
        q = {"list-type": "2", "prefix": prefix}
        if token:
            q["continuation-token"] = token
        url = "%s/%s?%s" % (endpoint, urllib.parse.quote(bucket),
                            urllib.parse.urlencode(q))
        with urllib.request.urlopen(url, timeout=30) as r:
            root = ET.fromstring(r.read())
        token, truncated = None, False
        for el in root:
            name = local(el.tag)
            if name == "Contents":
                o = {local(c.tag): c.text for c in el}
                contents.append({"Key": o["Key"],
                                 "LastModified": o.get("LastModified"),
                                 "Size": int(o.get("Size") or 0)})
            elif name == "IsTruncated":
                truncated = el.text == "true"
            elif name == "NextContinuationToken":
                token = el.text
        if not truncated:
            break
        if not token:
            sys.exit("s3_list: truncated listing without a continuation token")
    if keys_only:
        for o in contents:
            print(o["Key"])
    else:
        json.dump({"Contents": contents} if contents else {}, sys.stdout)
        print()


if __name__ == "__main__":
    main()
