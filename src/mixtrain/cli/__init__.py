"""The `mixtrain` command line: one module per noun, thin over MixClient."""
