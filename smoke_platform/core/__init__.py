"""The contract shared by Dagster, BentoML, the stream worker and Spark.

Nothing in this package imports dagster, bentoml or pyspark.
"""
