"""IP filters: pure rules and nft text (spec, nftables), and the fleet logic (apply, listing)."""
