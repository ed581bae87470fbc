"""Tables: reading uploads into normalized Parquet, profiling columns, the safe expression
language, and the cleaning transforms. Everything here is synchronous and CPU-bound: services run
it in a worker thread, never on the event loop."""
