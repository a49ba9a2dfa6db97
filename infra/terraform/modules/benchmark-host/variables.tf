# One benchmark host: an instance that runs the suite's cells for its device, uploads every
# result document as soon as it is written, then terminates itself. See README.md.

variable "name" {
  description = "Machine name from the suite's `machines:` list; also the results prefix runs/<run_id>/results/<name>/."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,39}$", var.name))
    error_message = "name: 1-40 characters, lower-case letters, digits and '-'."
  }
}

variable "run_id" {
  description = "The run this host belongs to (the prefix runs/<run_id>/ in the bucket)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.run_id))
    error_message = "run_id: letters, digits, '.', '_' and '-', at most 64 characters."
  }
}

variable "bucket_name" {
  description = "Results bucket name (the host reads runs/<run_id>/input/* and writes runs/<run_id>/results/<name>/*, nothing else)."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket (the host may decrypt and encrypt with it through S3 only)."
  type        = string
}

variable "package_key" {
  description = "Object key of the embedperf package (source archive or wheel) under runs/<run_id>/input/."
  type        = string
}

variable "suite_key" {
  description = "Object key of the suite YAML under runs/<run_id>/input/."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type, e.g. c7i.2xlarge (x86 CPU), c8g.2xlarge (ARM CPU), g6.xlarge (GPU)."
  type        = string
}

variable "arch" {
  description = "CPU architecture of instance_type and ami_id: x86_64 or arm64."
  type        = string
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "arch must be x86_64 or arm64."
  }
}

variable "device" {
  description = "What the host benchmarks: cpu, or cuda (runs the cpu and the cuda cells; the AMI must have the NVIDIA driver)."
  type        = string
  validation {
    condition     = contains(["cpu", "cuda"], var.device)
    error_message = "device must be cpu or cuda."
  }
}

variable "ami_id" {
  description = "AMI for this host (matching arch). Ubuntu 24.04 or Amazon Linux 2023 for CPU hosts; for device = cuda an image with the NVIDIA driver (e.g. the AWS Deep Learning Base GPU AMI)."
  type        = string
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "spot" {
  description = "Run as a one-time spot instance (terminated on interruption; at most the cell in progress is lost)."
  type        = bool
  default     = false
}

variable "spot_max_price" {
  description = "Highest spot price in USD per hour; null means the on-demand price."
  type        = string
  default     = null
}

variable "max_hours" {
  description = "Hard time limit: the host powers itself off (and so terminates) this many hours after its first boot, whatever it is doing."
  type        = number
  default     = 3
  validation {
    condition     = var.max_hours > 0 && var.max_hours <= 48
    error_message = "max_hours must be in (0, 48]."
  }
}

variable "root_volume_gb" {
  description = "Encrypted gp3 root volume size in GiB: OS, PyTorch/CUDA wheels, the native builds and the model exports (fp32 exports of a 0.6B model need about 10 GiB)."
  type        = number
  default     = 100
  validation {
    condition     = var.root_volume_gb >= 30
    error_message = "root_volume_gb must be at least 30."
  }
}

variable "vpc_id" {
  description = "VPC of subnet_id (for the host's security group)."
  type        = string
}

variable "subnet_id" {
  description = "Subnet to start the host in. It needs a route out (public IP or NAT) to reach the package registries and the model hub."
  type        = string
}

variable "associate_public_ip" {
  description = "Give the host a public IPv4 address (needed for egress in a public subnet without NAT). No inbound rule is ever opened."
  type        = bool
  default     = true
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore so the host can be reached with Session Manager. Off by default: no access at all."
  type        = bool
  default     = false
}

variable "bootstrap_script" {
  description = "Content of the bootstrap script the host runs (src/embedperf/cloud/bootstrap.sh)."
  type        = string
}

variable "extra_env" {
  description = "Extra environment for the bootstrap script, e.g. EMBEDPERF_NATIVE = \"0\". Never secrets: user data is readable on the host through the instance metadata."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags for every resource of the host."
  type        = map(string)
  default     = {}
}
