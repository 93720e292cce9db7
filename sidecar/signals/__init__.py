"""Pure functions from a history of snapshots to the numbers people act on."""
