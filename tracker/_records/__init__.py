"""The record spine: what a run log holds and what it adds up to, for every reader.

- `codec`: the exact encoding of values (NaN, ±inf and big ints survive);
- `kinds`: every record kind, defined once (fields, check, fold);
- `state`: `RunState`, what a run's records add up to;
- `fold`: the one fold of records into a `RunState`;
- `batch`: batches as the wire carries them, decoded and checked;
- `summary`: the run summary and `define_metric` rules;
- `sampler`: which rows a sampled history read keeps;
- `history`: history reads over folded rows.

The client (`read_run`, a live run's summary, `tracker sync`) and every server backend
use these alike, so a run reads back the same from its directory and from the server.
"""
