// Dapr kit's scheme v1 as a command, for the interop tests (server/tests/test_cryption_go.py).
package main

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dapr/kit/crypto/aeskw"
	encv1 "github.com/dapr/kit/schemes/enc/v1"
)

// Command dapr_enc_v1 encrypts or decrypts stdin to stdout with Dapr kit's own schemes/enc/v1, for
// the interop tests of test_cryption_go.py.
//
// usage: dapr_enc_v1 encrypt|decrypt KEYNAME (aes:HEX | rsa:PEMFILE) ALGORITHM CIPHER < in > out
func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
}

func run() error {
	mode, keyName, keySpec, algorithm, cipher := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	var aesKey []byte
	var rsaKey *rsa.PrivateKey
	if keySpec[:4] == "aes:" {
		var err error
		if aesKey, err = hex.DecodeString(keySpec[4:]); err != nil {
			return err
		}
	} else {
		data, err := os.ReadFile(keySpec[4:])
		if err != nil {
			return err
		}
		block, _ := pem.Decode(data)
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return err
		}
		rsaKey = parsed.(*rsa.PrivateKey)
	}
	wrap := func(plaintextKey []byte, alg string, name string, nonce []byte) ([]byte, []byte, error) {
		if aesKey != nil {
			block, err := aes.NewCipher(aesKey)
			if err != nil {
				return nil, nil, err
			}
			wrapped, err := aeskw.Wrap(block, plaintextKey)
			return wrapped, nil, err
		}
		wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &rsaKey.PublicKey, plaintextKey, nil)
		return wrapped, nil, err
	}
	unwrap := func(wrappedKey []byte, alg string, name string, nonce []byte, tag []byte) ([]byte, error) {
		if name != keyName {
			return nil, errors.New("unexpected key name " + name)
		}
		if aesKey != nil {
			block, err := aes.NewCipher(aesKey)
			if err != nil {
				return nil, err
			}
			return aeskw.Unwrap(block, wrappedKey)
		}
		return rsa.DecryptOAEP(sha256.New(), rand.Reader, rsaKey, wrappedKey, nil)
	}
	var out io.Reader
	var err error
	if mode == "encrypt" {
		c := encv1.Cipher(cipher)
		out, err = encv1.Encrypt(os.Stdin, encv1.EncryptOptions{
			WrapKeyFn: wrap, Algorithm: encv1.KeyAlgorithm(algorithm), KeyName: keyName, Cipher: &c,
		})
	} else {
		out, err = encv1.Decrypt(os.Stdin, encv1.DecryptOptions{UnwrapKeyFn: unwrap})
	}
	if err != nil {
		return err
	}
	_, err = io.Copy(os.Stdout, out)
	return err
}
