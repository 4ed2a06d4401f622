"""Metering, the request path's record of what each model call cost and produced.

`meter.Meter` follows one call's events and finishes it into a `writes.UsageRecord`;
`recorder.usage_recorder` group-commits the rows with the same requests' conversation turns and request
logs (`writes.usage_events_write`: the INSERTs); what the database cannot take waits in `spool` until it
can. billing rolls the rows up and debits them; it does not write them.
"""
