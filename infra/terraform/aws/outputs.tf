output "bucket_name" {
  description = "The results bucket."
  value       = aws_s3_bucket.results.id
}

output "bucket_arn" {
  description = "ARN of the results bucket."
  value       = aws_s3_bucket.results.arn
}

output "kms_key_arn" {
  description = "The key that encrypts the bucket."
  value       = aws_kms_key.results.arn
}

output "run_id" {
  description = "The run the hosts belong to."
  value       = var.run_id
}

output "input_uri" {
  description = "Where this run's package and suite are."
  value       = "s3://${aws_s3_bucket.results.id}/${local.input_prefix}/"
}

output "results_uri" {
  description = "The run's results prefix (one folder per machine); `embedperf cloud collect` and `embedperf report` read it."
  value       = "s3://${aws_s3_bucket.results.id}/runs/${var.run_id}/results/"
}

output "instance_ids" {
  description = "EC2 instance id of each host, by machine name."
  value       = { for name, host in module.host : name => host.instance_id }
}

output "machines" {
  description = "Each host's instance type, device, market and hard time limit."
  value = { for name, m in var.machines : name => {
    instance_id   = module.host[name].instance_id
    instance_type = m.instance_type
    device        = m.device
    market        = m.spot ? "spot" : "on-demand"
    max_hours     = m.max_hours
  } }
}
