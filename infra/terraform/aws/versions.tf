terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
  # `embedperf cloud` keeps the state outside the checkout
  # (-backend-config=path=$XDG_CACHE_HOME/embedperf/cloud/terraform.tfstate).
  # Replace with an S3 backend to share a deployment between people.
  backend "local" {}
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge(var.tags, { "embedperf" = "true" })
  }
}
