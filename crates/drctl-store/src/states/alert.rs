//! States of alerting: what an event is about, how grave it is, and where
//! its delivery to a webhook stands.

state_enum! {
    /// What a raised alert event is about (the config's `events` of a
    /// webhook name the same set).
    pub enum AlertKind {
        /// RPO breach started / ended.
        Breach,
        /// The tier's proof (drill, restore test) became stale / fresh again.
        Evidence,
        /// A backup, verification or restore test failed.
        Backup,
        /// A failover, switchover, drill, rejoin or recover started / ended.
        Operation,
    }
}

state_enum! {
    /// How grave a raised alert event is.
    pub enum AlertSeverity {
        Info,
        Warning,
        Critical,
    }
}

state_enum! {
    /// Where one event's delivery to one webhook stands (the outbox).
    pub enum DeliveryStatus {
        /// Not yet delivered; retried at its next time.
        Pending,
        Delivered,
        /// Given up after the last retry.
        Failed,
    }
}

crate::stored_as_text!(AlertKind, AlertSeverity, DeliveryStatus);
