"""Fan a suite out to cloud machines: Terraform creates them, cloud-init runs bootstrap.sh,
an object-store bucket carries the package in and the result documents out (docs/cloud.md).

Nothing here schedules work: each machine runs every cell of the suite whose device it has.
boto3 is imported only where S3 is used (the `cloud` extra).
"""
