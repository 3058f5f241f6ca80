//! The cluster seam: how shells read, watch and write cluster objects.
