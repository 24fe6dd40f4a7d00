//! States of alerting: how grave an event is, and where its delivery to a
//! webhook stands.

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

crate::stored_as_text!(AlertSeverity, DeliveryStatus);
