output "instance_id" {
  description = "EC2 instance id of the host."
  value       = aws_instance.host.id
}

output "results_uri" {
  description = "Where the host writes its result documents."
  value       = "s3://${var.bucket_name}/${local.results_prefix}/"
}

output "role_arn" {
  description = "The host's IAM role (read runs/<run_id>/input/*, write runs/<run_id>/results/<name>/*)."
  value       = aws_iam_role.host.arn
}

output "deadline_hours" {
  description = "The hard time limit after first boot."
  value       = var.max_hours
}
