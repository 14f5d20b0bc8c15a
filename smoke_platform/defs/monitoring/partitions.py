"""One partition per day of stream output (added by `stream_partition_sensor`)."""

import dagster as dg

stream_dates = dg.DynamicPartitionsDefinition(name="stream_dates")
