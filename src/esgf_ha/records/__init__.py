"""The ESGF record model: Dataset, File and Aggregation records and their field schema."""
