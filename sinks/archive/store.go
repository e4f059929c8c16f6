package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Entry is one object of a listing.
type Entry struct {
	Key  string
	Size int64
}

// Store is where an archive lives: an S3 bucket or the directory of the
// file:// sink.
type Store interface {
	// List returns every object whose key starts with prefix, all pages.
	List(ctx context.Context, prefix string) ([]Entry, error)
	// Get returns the bytes of the object at key.
	Get(ctx context.Context, key string) ([]byte, error)
	// String names the store in messages: s3://BUCKET or file:///DIR.
	String() string
}

// ListObjectsAPI is the part of the S3 client that lists; tests wrap a real
// client to count the calls.
type ListObjectsAPI interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// GetObjectAPI is the part of the S3 client that downloads.
type GetObjectAPI interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// S3 is a Store over one bucket.
type S3 struct {
	Lister ListObjectsAPI
	Getter GetObjectAPI
	Bucket string
}

// NewS3 returns the store of bucket, reached through client (an *s3.Client).
func NewS3(client interface {
	ListObjectsAPI
	GetObjectAPI
}, bucket string) *S3 {
	return &S3{Lister: client, Getter: client, Bucket: bucket}
}

func (s *S3) String() string { return "s3://" + s.Bucket }

// List lists prefix page by page. It never lists above the prefix: a
// window's prefixes are hour partitions, so the bucket's root is never
// walked.
func (s *S3) List(ctx context.Context, prefix string) ([]Entry, error) {
	var out []Entry
	p := s3.NewListObjectsV2Paginator(s.Lister, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.Bucket),
		Prefix: aws.String(prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, Entry{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
		}
	}
	return out, nil
}

// Get downloads key whole. Objects are batches of a few MiB at most; the
// reader bounds how many it holds.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.Getter.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.Bucket, key, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if n := aws.ToInt64(out.ContentLength); n > 0 && n < 1<<30 {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.Bucket, key, err)
	}
	return buf.Bytes(), nil
}

// Dir is a Store over the directory of the file:// sink (sinks.Dir), whose
// files sit at their keys.
type Dir struct {
	Root string
}

func (d *Dir) String() string { return "file://" + d.Root }

// List reads the directory that prefix names; prefix must end in '/', as
// hour prefixes do. A missing directory is an empty listing. Hidden files
// are sinks.Dir's uploads in progress and are left out.
func (d *Dir) List(ctx context.Context, prefix string) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := d.path(strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []Entry
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		var size int64
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
		out = append(out, Entry{Key: prefix + e.Name(), Size: size})
	}
	return out, nil
}

// Get reads the file at key.
func (d *Dir) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return b, nil
}

func (d *Dir) path(key string) (string, error) {
	rel := filepath.FromSlash(key)
	if rel != "" && !filepath.IsLocal(rel) {
		return "", errors.New("key leaves the root directory")
	}
	return filepath.Join(d.Root, rel), nil
}
