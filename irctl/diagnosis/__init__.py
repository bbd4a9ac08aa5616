"""Diagnosis: measure a cluster's proxies, backends and network paths, then name the incident.

`collect` gathers (one SSH exec per proxy, the operator-side probe, memcached
stats), `classify` decides, `report` shapes the result runbooks branch on.
Nothing here imports paramiko, boto3 or pymemcache at import time.
"""
