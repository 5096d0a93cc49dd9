"""One package per engine; each maps microhive's concepts onto the engine's own primitives."""
