"""Operating an index: the scheduled reindex, the deflection report, deleting and counting documents
by source, and each source's last run and health.

Above the services (search, deflect, peers, sources) and below the front door, which exposes them;
nothing here is imported by ``import kbsearch`` until used.
"""
