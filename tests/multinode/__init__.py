"""Multi-node tests: several agents on private network namespaces (see ``netns``)."""
