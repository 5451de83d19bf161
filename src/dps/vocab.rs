//! DPS's string vocabularies as types: attestation kinds, provisioning and
//! registration statuses, allocation policies.
//!
//! The wire may grow (DPS added `geoLatency`, then `custom`; new statuses
//! appear with new api-versions), so each type keeps an unknown value as
//! `Other(String)` instead of failing, the way rustls keeps unknown wire
//! values. Parsing is case-insensitive, as DPS is; rendering always gives
//! the canonical spelling. Parse once at the edge and compare variants
//! inside: no `to_lowercase()` comparisons.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a wire enum: known variants with their canonical spelling, plus
/// `Other(String)` for values this version does not know.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of `pki` does not know, kept as sent.
            Other(String),
        }

        impl $name {
            /// Every known value, in documentation order.
            pub const KNOWN: &'static [$name] = &[ $( $name::$variant ),+ ];

            /// Parses a wire value case-insensitively; never fails.
            pub fn parse(s: &str) -> Self {
                $( if s.eq_ignore_ascii_case($wire) { return $name::$variant; } )+
                $name::Other(s.to_owned())
            }

            /// The canonical wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(s) => s,
                }
            }

            /// Whether this is a value `pki` knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }

            /// The known spellings, for messages ("one of a, b, c").
            pub fn known_list() -> String {
                [$( $wire ),+].join(", ")
            }
        }

        // Command-line flags take the known values (`--status disabled`).
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                Self::KNOWN
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                match self {
                    $( $name::$variant => Some(clap::builder::PossibleValue::new($wire)), )+
                    $name::Other(_) => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

wire_enum! {
    /// `attestation.type` of an enrollment.
    AttestationKind {
        /// X.509 certificates (signing certificates, CA references or client certificates).
        X509 => "x509",
        /// A shared symmetric key (group key or device key).
        SymmetricKey => "symmetricKey",
        /// A TPM endorsement key (individual enrollments only).
        Tpm => "tpm",
    }
}

wire_enum! {
    /// `provisioningStatus` of an enrollment.
    ProvisioningStatus {
        /// Devices may register.
        Enabled => "enabled",
        /// Devices are refused.
        Disabled => "disabled",
    }
}

wire_enum! {
    /// `status` of a registration operation or state.
    RegistrationStatus {
        /// Not yet assigned to a hub.
        Unassigned => "unassigned",
        /// Being assigned (the operation is still running).
        Assigning => "assigning",
        /// Assigned to a hub.
        Assigned => "assigned",
        /// Assignment failed; `errorMessage` says why.
        Failed => "failed",
        /// The enrollment is disabled.
        Disabled => "disabled",
    }
}

wire_enum! {
    /// `allocationPolicy` of an enrollment.
    AllocationPolicy {
        /// Evenly weighted hashed distribution over the hubs.
        Hashed => "hashed",
        /// The hub with the lowest latency.
        GeoLatency => "geoLatency",
        /// One fixed hub.
        Static => "static",
        /// A webhook (Azure Function) decides.
        Custom => "custom",
    }
}

impl RegistrationStatus {
    /// Whether an operation with this status is finished (no more polling).
    pub fn is_final(&self) -> bool {
        match self {
            RegistrationStatus::Assigning => false,
            // Older services report `registering` (and some proxies an empty
            // status) while the operation runs.
            RegistrationStatus::Other(s) => {
                !(s.is_empty() || s.eq_ignore_ascii_case("registering"))
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_renders_canonically() {
        assert_eq!(AttestationKind::parse("X509"), AttestationKind::X509);
        assert_eq!(
            AttestationKind::parse("symmetrickey").as_str(),
            "symmetricKey"
        );
        assert_eq!(
            AllocationPolicy::parse("GEOLATENCY"),
            AllocationPolicy::GeoLatency
        );
        assert_eq!(
            ProvisioningStatus::parse("Disabled"),
            ProvisioningStatus::Disabled
        );
    }

    #[test]
    fn keeps_unknown_values() {
        let v = AllocationPolicy::parse("nearest");
        assert_eq!(v, AllocationPolicy::Other("nearest".into()));
        assert_eq!(v.as_str(), "nearest");
        assert!(!v.is_known());
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"nearest\"");
        let back: AllocationPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn serde_round_trip_known() {
        let s: RegistrationStatus = serde_json::from_str("\"ASSIGNED\"").unwrap();
        assert_eq!(s, RegistrationStatus::Assigned);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"assigned\"");
        assert!(s.is_final());
        assert!(!RegistrationStatus::Assigning.is_final());
        assert!(!RegistrationStatus::parse("registering").is_final());
        assert!(!RegistrationStatus::parse("").is_final());
    }
}
