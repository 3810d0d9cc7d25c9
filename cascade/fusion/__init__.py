"""Multi-system fusion: NIST-style ROVER voting and LLM fusion of several recognisers' outputs.

    rover(systems) -> words           (cascade.fusion.rover)
    fuse(inp, method) / fuse_many     (cascade.fusion.fuse: rover, rescore, ger)
"""
