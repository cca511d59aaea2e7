package testnet

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"mime/multipart"
)

// Upload is a multipart file upload, as OpenAI's /v1/files takes one
// (purpose batch, a file field), of size bytes made up from seed as they
// are read: a body far larger than memory need be, to relay.
type Upload struct {
	// Body is the request body; ContentType its Content-Type.
	Body        io.Reader
	ContentType string
	sums        chan [2]string // the body's and the file's
}

// NewUpload starts writing an upload of size bytes into Body.
func NewUpload(size int64, seed byte) *Upload {
	pr, pw := io.Pipe()
	body, file := sha256.New(), sha256.New()
	mw := multipart.NewWriter(io.MultiWriter(pw, body))
	u := &Upload{Body: pr, ContentType: mw.FormDataContentType(), sums: make(chan [2]string, 1)}
	go func() {
		err := func() error {
			if err := mw.WriteField("purpose", "batch"); err != nil {
				return err
			}
			fw, err := mw.CreateFormFile("file", "big.jsonl")
			if err != nil {
				return err
			}
			if _, err := io.Copy(io.MultiWriter(fw, file), io.LimitReader(rand.NewChaCha8([32]byte{seed}), size)); err != nil {
				return err
			}
			return mw.Close()
		}()
		u.sums <- [2]string{hex.EncodeToString(body.Sum(nil)), hex.EncodeToString(file.Sum(nil))}
		pw.CloseWithError(err)
	}()
	return u
}

// SHA256 returns the hex SHA-256 of the whole body and of the file's
// content, once the body was read to its end.
func (u *Upload) SHA256() (body, file string) {
	s := <-u.sums
	u.sums <- s
	return s[0], s[1]
}
