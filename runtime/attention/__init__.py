"""Attention processors the runtime strategies install on a family's attention modules (stale K/V for
PipeFusion, the Ulysses all-to-alls), one per processor kind; the family adapter says where they sit."""
