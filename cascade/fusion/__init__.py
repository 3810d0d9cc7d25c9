"""Multi-system fusion: NIST-style ROVER voting and LLM fusion of several recognisers' outputs.

    rover(systems) -> words           (cascade.fusion.rover)
    fuse(inp, method) / fuse_many     (cascade.fusion.fuse: rover, rescore, rerank, ger)
    rerank(prepared, backend)         (cascade.fusion.rerank: trained MWER pick of ROVER or one system)
    estimate(inputs) -> Reliability   (cascade.fusion.reliability: each system's WER without references)
"""
