#!/usr/bin/env bash
# Creates dnsgeo's cache table with the AWS CLI: the same table as
# dynamodb-table.yaml and `dnsgeo table create` (partition key `ip` (S),
# on-demand billing, encryption at rest, TTL on `expires_at`).
#
#   TABLE=dnsgeo-cache AWS_REGION=eu-west-1 ./create-table.sh
set -euo pipefail

TABLE="${TABLE:-dnsgeo-cache}"

aws dynamodb create-table \
  --table-name "$TABLE" \
  --attribute-definitions AttributeName=ip,AttributeType=S \
  --key-schema AttributeName=ip,KeyType=HASH \
  --billing-mode PAY_PER_REQUEST \
  --sse-specification Enabled=true \
  --tags Key=app,Value=dnsgeo \
  && aws dynamodb wait table-exists --table-name "$TABLE" \
  && aws dynamodb update-time-to-live \
    --table-name "$TABLE" \
    --time-to-live-specification "Enabled=true,AttributeName=expires_at"

echo "created $TABLE; now set DNSGEO_DYNAMODB_TABLE=$TABLE"
