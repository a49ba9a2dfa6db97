variable "region" {
  description = "AWS region of the bucket and the hosts."
  type        = string
  default     = "us-east-1"
}

variable "run_id" {
  description = "Run id: input under runs/<run_id>/input/, results under runs/<run_id>/results/<machine>/. Set by `embedperf cloud up`."
  type        = string
  default     = "none"
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.run_id))
    error_message = "run_id: letters, digits, '.', '_' and '-', at most 64 characters."
  }
}

variable "bucket_name" {
  description = "Name of the results bucket; null picks a unique name starting with embedperf-results-."
  type        = string
  default     = null
}

variable "force_destroy_bucket" {
  description = "Let `terraform destroy` delete the bucket with its results. Off: results outlive the deployment."
  type        = bool
  default     = false
}

variable "results_retention_days" {
  description = "Lifecycle rule: objects under runs/ expire this many days after they were written."
  type        = number
  default     = 365
}

variable "noncurrent_version_days" {
  description = "Lifecycle rule: overwritten or deleted object versions are kept this many days."
  type        = number
  default     = 30
}

variable "machines" {
  description = <<-EOT
    The hosts of the run, by name (the suite's `machines:` list, written by `embedperf cloud up`).
    An empty map (what `embedperf cloud down` applies) removes every host and keeps the bucket.
      instance_type  EC2 type, e.g. c7i.2xlarge, c8g.2xlarge, g6.xlarge
      arch           x86_64 or arm64 (must match instance_type and ami_id)
      device         cpu, or cuda for a GPU host (runs the cpu and the cuda cells)
      ami_id         the image; a cuda host needs one with the NVIDIA driver
      spot           one-time spot instead of on-demand
      spot_max_price USD/hour cap for spot, null = on-demand price
      max_hours      hard time limit from first boot (the host terminates itself)
      root_volume_gb encrypted gp3 root volume size
  EOT
  type = map(object({
    instance_type  = string
    arch           = string
    device         = string
    ami_id         = string
    spot           = optional(bool, false)
    spot_max_price = optional(string)
    max_hours      = optional(number, 3)
    root_volume_gb = optional(number, 100)
  }))
  default = {}
}

variable "package_path" {
  description = "Local path of the embedperf package to upload to runs/<run_id>/input/ (a source archive of the commit, or a wheel). Required when machines is not empty."
  type        = string
  default     = null
}

variable "suite_path" {
  description = "Local path of the suite YAML to upload to runs/<run_id>/input/suite.yaml. Required when machines is not empty."
  type        = string
  default     = null
}

variable "bootstrap_script_path" {
  description = "The script each host runs; null = src/embedperf/cloud/bootstrap.sh of this checkout."
  type        = string
  default     = null
}

variable "vpc_id" {
  description = "VPC for the hosts; null = the region's default VPC."
  type        = string
  default     = null
}

variable "subnet_id" {
  description = "Subnet for the hosts (needs a route out); null = a default subnet of the default VPC."
  type        = string
  default     = null
}

variable "associate_public_ip" {
  description = "Give hosts a public IPv4 for egress (default-VPC subnets have no NAT). No inbound port is opened either way."
  type        = bool
  default     = true
}

variable "enable_ssm" {
  description = "Allow AWS Systems Manager Session Manager on the hosts. Off by default: no access at all (no SSH ever)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
