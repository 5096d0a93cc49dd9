"""One :class:`~microhive.tasks.store.ResultStore` per engine."""
