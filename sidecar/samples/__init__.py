"""The reviewer side: pull, query and compare sampled completions (``vllm-sidecar samples``).

| module | job |
|---|---|
| ``source``, ``keys``, ``validate`` | where samples live; which objects are ours and intact |
| ``pull``, ``manifest``, ``progress`` | incremental, resumable S3 -> local cache sync |
| ``dataset``, ``output`` | the DuckDB ``samples`` view; table/CSV/JSONL/Parquet output |
| ``prompts``, ``show``, ``export`` | reading requests and answers; one record; labelling export |
| ``timespec``, ``windows`` | time ranges and pinned comparison windows |
| ``drift/`` | signals, weighted tests, Holm, verdicts, the HTML report |
| ``cli``, ``commands`` | the subcommands and their exit codes |

Only the shared schemas of the running sidecar are imported (``sidecar.sampling.record``,
``sidecar.sampling.schema`` and ``sidecar.sampling.layout``). User documentation:
``docs/samples.md``.
"""
