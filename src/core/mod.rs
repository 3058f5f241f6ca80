//! The pure planner: every decision as a function from an observed snapshot to desired state.
