# The AWS deployment of embedperf: one long-lived results bucket, and per run the input
# objects and one benchmark host per machine of the suite (modules/benchmark-host).

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  with_hosts   = length(var.machines) > 0
  input_prefix = "runs/${var.run_id}/input"
  package_key  = var.package_path == null ? "" : "${local.input_prefix}/${basename(var.package_path)}"
  suite_key    = "${local.input_prefix}/suite.yaml"
  bootstrap    = coalesce(var.bootstrap_script_path, "${path.module}/../../../src/embedperf/cloud/bootstrap.sh")
  use_default  = var.subnet_id == null
  vpc_id       = local.use_default ? one(data.aws_vpc.default[*].id) : var.vpc_id
  subnet_id    = local.use_default ? one(data.aws_subnets.default[*].ids[0]) : var.subnet_id
  account_arn  = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

# --- the results bucket -----------------------------------------------------------------

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A KMS key policy's Resource is the key itself ("*"); administration stays with the account's IAM.
  #checkov:skip=CKV_AWS_111:A KMS key policy's Resource is the key itself ("*"); write access stays with the account's IAM.
  #checkov:skip=CKV_AWS_356:A KMS key policy's Resource is the key itself ("*").
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_arn]
    }
  }
}

resource "aws_kms_key" "results" {
  description             = "embedperf results bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_s3_bucket" "results" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket; CloudTrail data events are the opt-in audit trail for a benchmark-results bucket.
  #checkov:skip=CKV_AWS_144:Benchmark results are reproducible; cross-region replication would double the cost for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; `embedperf cloud status` polls the results prefix.
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "embedperf-results-" : null
  force_destroy = var.force_destroy_bucket
}

resource "aws_s3_bucket_public_access_block" "results" {
  bucket                  = aws_s3_bucket.results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.results.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "results" {
  bucket = aws_s3_bucket.results.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "results" {
  bucket     = aws_s3_bucket.results.id
  depends_on = [aws_s3_bucket_versioning.results]

  rule {
    id     = "expire-runs"
    status = "Enabled"
    filter {
      prefix = "runs/"
    }
    expiration {
      days = var.results_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.results.arn,
      "${aws_s3_bucket.results.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "results" {
  bucket     = aws_s3_bucket.results.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.results]
}

# --- this run's input -------------------------------------------------------------------

resource "aws_s3_object" "package" {
  count                  = local.with_hosts ? 1 : 0
  bucket                 = aws_s3_bucket.results.id
  key                    = local.package_key
  source                 = var.package_path
  source_hash            = filemd5(var.package_path)
  server_side_encryption = "aws:kms"
  kms_key_id             = aws_kms_key.results.arn
  depends_on             = [aws_s3_bucket_server_side_encryption_configuration.results]

  lifecycle {
    precondition {
      condition     = var.package_path != null && var.suite_path != null
      error_message = "machines is not empty: set package_path and suite_path (embedperf cloud up does)."
    }
  }
}

resource "aws_s3_object" "suite" {
  count                  = local.with_hosts ? 1 : 0
  bucket                 = aws_s3_bucket.results.id
  key                    = local.suite_key
  source                 = var.suite_path
  source_hash            = filemd5(var.suite_path)
  content_type           = "application/yaml"
  server_side_encryption = "aws:kms"
  kms_key_id             = aws_kms_key.results.arn
  depends_on             = [aws_s3_bucket_server_side_encryption_configuration.results]
}

# --- the hosts --------------------------------------------------------------------------

data "aws_vpc" "default" {
  count   = local.use_default && local.with_hosts ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = local.use_default && local.with_hosts ? 1 : 0
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

# package_key and suite_key come from the uploaded objects, so a host starts only once its input
# is in the bucket (a module-level depends_on would defer the module's data sources to apply).
module "host" {
  source   = "../modules/benchmark-host"
  for_each = var.machines

  name                = each.key
  run_id              = var.run_id
  bucket_name         = aws_s3_bucket.results.bucket
  kms_key_arn         = aws_kms_key.results.arn
  package_key         = basename(one(aws_s3_object.package[*].key))
  suite_key           = basename(one(aws_s3_object.suite[*].key))
  instance_type       = each.value.instance_type
  arch                = each.value.arch
  device              = each.value.device
  ami_id              = each.value.ami_id
  spot                = each.value.spot
  spot_max_price      = each.value.spot_max_price
  max_hours           = each.value.max_hours
  root_volume_gb      = each.value.root_volume_gb
  vpc_id              = local.vpc_id
  subnet_id           = local.subnet_id
  associate_public_ip = var.associate_public_ip
  enable_ssm          = var.enable_ssm
  bootstrap_script    = file(local.bootstrap)
  tags                = var.tags
}
