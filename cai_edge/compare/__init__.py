"""``cai-edge compare``: accuracy, speed and cost of the same bundles across device tiers."""
