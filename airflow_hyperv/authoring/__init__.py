"""What a DAG file uses to describe protection (the top layer: nothing below imports it):

- ``protect``: the protection chain of a VM as a task group (``protect_vm``, ``build_protection_chain``);
- ``inventory``: the fleet inventory (hosts at parse time, their VMs at run time).
"""
