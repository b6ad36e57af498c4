//! The signature scheme jsonwebtoken signs and verifies with: Ed25519
//! through `ed25519-dalek`, and nothing else.
//!
//! jsonwebtoken's own `rust_crypto` backend brings RSA, P-256 and P-384
//! with it (the `rsa` crate among them, with its open timing advisory),
//! though a token here is only ever EdDSA; leaving them out takes their
//! build off every first build. Any other algorithm, or a key of another
//! family, is refused (`InvalidAlgorithm`).

use std::sync::Once;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

static PROVIDER: CryptoProvider =
    CryptoProvider { signer_factory: signer, verifier_factory: verifier, key_utils: KeyUtils::new_unimplemented() };

/// Makes Ed25519 the process's jsonwebtoken backend; call before signing
/// or verifying (it is cheap to call again).
pub fn install() {
    static ONCE: Once = Once::new();
    // Err: a provider is installed already, which in this workspace can
    // only be this one.
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

struct EdSigner(SigningKey);

impl signature::Signer<Vec<u8>> for EdSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(message).to_bytes().to_vec())
    }
}

impl JwtSigner for EdSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdVerifier(VerifyingKey);

impl signature::Verifier<Vec<u8>> for EdVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        self.0.verify(message, &Signature::from_slice(signature)?)
    }
}

impl JwtVerifier for EdVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = SigningKey::from_pkcs8_der(key.as_bytes()).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(EdSigner(key)))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    // An Ed25519 public key is exactly 32 bytes; anything else is not one.
    let raw: &[u8; 32] = key.try_get_as_bytes()?.try_into().map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(EdVerifier(VerifyingKey::from_bytes(raw).map_err(|_| ErrorKind::InvalidEddsaKey)?)))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    fn keys() -> (EncodingKey, DecodingKey) {
        super::install();
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let der = signing.to_pkcs8_der().expect("pkcs8");
        let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        (EncodingKey::from_ed_der(der.as_bytes()), DecodingKey::from_ed_components(&public).expect("public key"))
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({ "sub": "someone", "exp": 4_000_000_000u64 })
    }

    #[test]
    fn an_ed25519_token_verifies_and_a_changed_one_does_not() {
        let (encoding, decoding) = keys();
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(), &encoding).expect("signed");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).expect("verifies");
        let (head, signature) = token.rsplit_once('.').expect("three parts");
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &signature[1..]);
        let refused = jsonwebtoken::decode::<serde_json::Value>(&tampered, &decoding, &validation);
        assert!(refused.is_err(), "a changed signature verifies");
    }

    #[test]
    fn other_algorithms_and_keys_are_refused() {
        let (encoding, _) = keys();
        let hmac = EncodingKey::from_secret(&[1; 32]);
        for (algorithm, key) in [(Algorithm::HS256, &hmac), (Algorithm::EdDSA, &hmac), (Algorithm::RS256, &encoding)] {
            let refused = jsonwebtoken::encode(&Header::new(algorithm), &claims(), key).expect_err("refused");
            assert!(matches!(refused.kind(), ErrorKind::InvalidAlgorithm), "{algorithm:?}: {refused:?}");
        }
        let secret = DecodingKey::from_secret(&[1; 32]);
        let refused = super::verifier(&Algorithm::EdDSA, &secret).err().expect("refused");
        assert!(matches!(refused.kind(), ErrorKind::InvalidAlgorithm), "{refused:?}");
    }
}
