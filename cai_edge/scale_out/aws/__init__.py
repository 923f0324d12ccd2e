"""AWS Lambda: the slim handler (numpy, onnxruntime, boto3), its package builder and the local fan-out."""
