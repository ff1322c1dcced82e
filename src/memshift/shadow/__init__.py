"""The secondary's side of every write: mirroring, the id map, failures kept for repair."""
