# One benchmark host of a run: a least-privilege role, a security group with no inbound
# rule, and an instance that cannot outlive its budget (shutdown behaviour terminate plus a
# hard deadline enforced on the machine from its first boot).

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  run_prefix     = "runs/${var.run_id}"
  input_prefix   = "${local.run_prefix}/input"
  results_prefix = "${local.run_prefix}/results/${var.name}"
  bucket_arn     = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"
  region         = data.aws_region.current.name
  tags = merge(var.tags, {
    "embedperf:run"     = var.run_id
    "embedperf:machine" = var.name
  })
  env = merge({
    EMBEDPERF_INPUT    = "s3://${var.bucket_name}/${local.input_prefix}/"
    EMBEDPERF_PACKAGE  = var.package_key
    EMBEDPERF_SUITE    = var.suite_key
    EMBEDPERF_RESULTS  = "s3://${var.bucket_name}/${local.results_prefix}/"
    EMBEDPERF_MACHINE  = var.name
    EMBEDPERF_DEVICE   = var.device
    EMBEDPERF_SETUP    = "1"
    EMBEDPERF_SHUTDOWN = "1"
    EMBEDPERF_WORKDIR  = "/opt/embedperf"
    EMBEDPERF_LOG      = "/var/log/embedperf-bootstrap.log"
    AWS_DEFAULT_REGION = local.region
    AWS_REGION         = local.region
  }, var.extra_env)
}

# --- identity: read only this run's input, write only this host's results -----------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "host" {
  statement {
    sid       = "ReadRunInput"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.input_prefix}/*"]
  }
  statement {
    sid       = "WriteOwnResults"
    actions   = ["s3:PutObject"]
    resources = ["${local.bucket_arn}/${local.results_prefix}/*"]
  }
  statement {
    sid       = "UseBucketKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name_prefix        = "embedperf-host-"
  description        = "embedperf run ${var.run_id}, machine ${var.name}: read its input, write its results"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "host" {
  name   = "embedperf-run-io"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.host.json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count      = var.enable_ssm ? 1 : 0
  role       = aws_iam_role.host.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "host" {
  name_prefix = "embedperf-host-"
  role        = aws_iam_role.host.name
  tags        = local.tags
}

# --- network: nothing inbound, HTTP(S) out for the package registries and the model hub ----

resource "aws_security_group" "host" {
  name_prefix = "embedperf-${var.name}-"
  description = "embedperf benchmark host: no inbound access; HTTPS/HTTP out for packages, models and S3"
  vpc_id      = var.vpc_id
  tags        = local.tags

  egress {
    description = "HTTPS: S3, PyPI, crates.io, Hugging Face"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] #tfsec:ignore:aws-ec2-no-public-egress-sgr
  }
  egress {
    description = "HTTP: Linux distribution package mirrors"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

# --- the host ---------------------------------------------------------------------------

resource "aws_instance" "host" {
  #checkov:skip=CKV_AWS_88:A public IPv4 is the default route out of a default-VPC subnet (no NAT); the security group opens no inbound port. Set associate_public_ip = false behind a NAT.
  ami                                  = var.ami_id
  instance_type                        = var.instance_type
  subnet_id                            = var.subnet_id
  vpc_security_group_ids               = [aws_security_group.host.id]
  associate_public_ip_address          = var.associate_public_ip
  iam_instance_profile                 = aws_iam_instance_profile.host.name
  instance_initiated_shutdown_behavior = "terminate"
  ebs_optimized                        = true
  monitoring                           = true

  user_data_base64 = base64gzip(templatefile("${path.module}/user_data.yaml.tftpl", {
    name             = var.name
    run_id           = var.run_id
    max_seconds      = ceil(var.max_hours * 3600)
    env              = local.env
    bootstrap_gz_b64 = base64gzip(var.bootstrap_script)
  }))
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = local.tags
  }

  dynamic "instance_market_options" {
    for_each = var.spot ? [1] : []
    content {
      market_type = "spot"
      spot_options {
        spot_instance_type             = "one-time"
        instance_interruption_behavior = "terminate"
        max_price                      = var.spot_max_price
      }
    }
  }

  tags = merge(local.tags, { Name = "embedperf-${var.run_id}-${var.name}" })

  lifecycle {
    precondition {
      condition     = var.device != "cuda" || can(regex("^(g|p)[0-9]", var.instance_type))
      error_message = "device = cuda needs a GPU instance type (g*, p*): ${var.instance_type} has no NVIDIA GPU."
    }
  }
}
