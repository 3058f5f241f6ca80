//! The scenario format: topology, Kubernetes objects, timeline and expectations.
