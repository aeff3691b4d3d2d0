package objstore

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// awsFile is the path of a standard AWS file: the environment variable
// env, else ~/.aws/name.
func awsFile(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".aws", name)
}

func awsProfile() string {
	if p := os.Getenv("AWS_PROFILE"); p != "" {
		return p
	}
	return "default"
}

// AWSCredentials returns the credentials the AWS tools would use, in
// their order: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN); else the profile AWS_PROFILE (default "default") of
// the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
// ~/.aws/credentials) merged over the config file (AWS_CONFIG_FILE,
// default ~/.aws/config), static keys, credential_process or SSO, through
// minio-go's providers; else none, for anonymous requests. A profile
// named by AWS_PROFILE, or a credentials file, that yields no
// credentials is an error rather than anonymous requests.
func AWSCredentials() (*credentials.Credentials, error) {
	if os.Getenv("AWS_ACCESS_KEY_ID") != "" || os.Getenv("AWS_ACCESS_KEY") != "" {
		return credentials.NewEnvAWS(), nil
	}
	c := credentials.New(&credentials.FileAWSCredentials{})
	if _, err := c.GetWithContext(&credentials.CredContext{Client: http.DefaultClient}); err != nil {
		_, statErr := os.Stat(awsFile("AWS_SHARED_CREDENTIALS_FILE", "credentials"))
		if os.Getenv("AWS_PROFILE") == "" && errors.Is(statErr, fs.ErrNotExist) {
			return credentials.New(&credentials.Static{}), nil // anonymous
		}
		return nil, fmt.Errorf("objstore: AWS credentials of profile %q (%s, %s): %w", awsProfile(),
			awsFile("AWS_SHARED_CREDENTIALS_FILE", "credentials"), awsFile("AWS_CONFIG_FILE", "config"), err)
	}
	return c, nil
}

// AWSRegion returns the region the AWS tools would use: AWS_REGION, else
// AWS_DEFAULT_REGION, else the region of profile AWS_PROFILE in the config
// file (AWS_CONFIG_FILE, default ~/.aws/config); "" if none says.
func AWSRegion() (string, error) {
	for _, env := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if r := os.Getenv(env); r != "" {
			return r, nil
		}
	}
	path := awsFile("AWS_CONFIG_FILE", "config")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) || path == "" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("objstore: AWS config: %w", err)
	}
	defer f.Close()
	// The config file names a profile's section "[profile NAME]", the
	// default one "[default]".
	want := "profile " + awsProfile()
	if awsProfile() == "default" {
		want = "default"
	}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			in = strings.Join(strings.Fields(strings.Trim(line, "[]")), " ") == want
		case in:
			if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "region" {
				return strings.TrimSpace(v), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("objstore: AWS config %s: %w", path, err)
	}
	return "", nil
}
