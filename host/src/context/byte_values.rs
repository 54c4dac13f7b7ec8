//! Serde for [`StagedWrites`](super::StagedWrites): each value as a byte
//! string (MessagePack `bin`, one byte per byte) rather than a sequence of
//! numbers, for results that cross a wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serializer};
use serde_bytes::{ByteBuf, Bytes};

/// Serialise a map of byte values.
pub fn serialize<S: Serializer>(map: &BTreeMap<String, Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(k, v)| (k, Bytes::new(v))))
}

/// Deserialise a map of byte values.
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
    let map = BTreeMap::<String, ByteBuf>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.into_vec())).collect())
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct W(#[serde(with = "super")] std::collections::BTreeMap<String, Vec<u8>>);

    #[test]
    fn values_go_as_byte_strings_and_come_back() {
        let w = W([("a".to_owned(), vec![0xff; 100]), ("b".to_owned(), Vec::new())].into());
        let packed = rmp_serde::to_vec(&w).unwrap();
        // 100 bytes of 0xff as numbers would take 200 bytes.
        assert!(packed.len() < 120, "{} bytes", packed.len());
        assert_eq!(rmp_serde::from_slice::<W>(&packed).unwrap(), w);
    }
}
