"""Sample decision, record schema, redaction, disk spool and S3 upload."""
