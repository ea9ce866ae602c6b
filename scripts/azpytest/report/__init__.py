"""`azpytest report`: the job summary, failure annotations and step outputs from JUnit files.

- `junit`: pytest's JUnit XML as a stream of events, and pytest's node ids from it;
- `model`: the results (counts, failures, shards) and the Reader that gathers them;
- `summary`: the verdict, the job summary, the terminal's text and the `::error` annotations;
- `merge`: one JUnit file written from many, streamed;
- `command`: the `report` subcommand: its arguments, inputs and step outputs.

Each imports only those above it: junit <- model <- summary, merge <- command.
"""
