-- The W3C traceparent of the span that made a work (the API request, or the consumer's
-- processing of its demand), when the process that made it exports traces: the
-- sweeper's compute of an API work joins the request's trace from it, and a work's
-- detail shows its trace id. NULL when tracing was off. No default, so adding the
-- column rewrites no row.
ALTER TABLE works ADD COLUMN trace_parent text;
