"""Datasets as Apache Iceberg tables (PyIceberg). A snapshot id is a dataset version."""
