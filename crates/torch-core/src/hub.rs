//! Names of the hub's D-Bus API (documented in `docs/dbus.md`).

/// The hub's well-known name on the system bus.
pub const BUS_NAME: &str = "org.torch.Torch1";
/// The object that carries the manager interface.
pub const OBJECT_PATH: &str = "/org/torch/Torch1";
/// The manager interface; a later incompatible API is `Manager2` beside it.
pub const INTERFACE: &str = "org.torch.Manager1";
