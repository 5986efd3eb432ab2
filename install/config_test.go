package install

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeConfigDir writes files (name → content) into a new directory.
func writeConfigDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func validConfigFiles(t *testing.T) map[string]string {
	ca, err := os.ReadFile("testdata/hub-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		KeyHubURL:    "https://eco.example.com\n",
		KeyClusterID: " c-7f3a9d\n",
		KeyToken:     testToken + "\n",
		KeyCACert:    string(ca),
	}
}

func TestLoadConfig(t *testing.T) {
	ca, err := os.ReadFile("testdata/hub-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	ca = []byte(strings.TrimSpace(string(ca)))
	nsFile := filepath.Join(t.TempDir(), "namespace")
	if err := os.WriteFile(nsFile, []byte("from-pod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingNSFile := filepath.Join(t.TempDir(), "absent")

	for _, tc := range []struct {
		name    string
		mutate  func(files map[string]string)
		nsFile  string
		want    AgentConfig
		wantErr []string
	}{
		{
			name:   "happy path, namespace from the pod",
			mutate: func(map[string]string) {},
			nsFile: nsFile,
			want:   AgentConfig{HubURL: "https://eco.example.com", ClusterID: "c-7f3a9d", Token: testToken, CAPEM: ca, Namespace: "from-pod"},
		},
		{
			name:   "pod namespace wins over the config file",
			mutate: func(f map[string]string) { f[KeyNamespace] = "from-config" },
			nsFile: nsFile,
			want:   AgentConfig{HubURL: "https://eco.example.com", ClusterID: "c-7f3a9d", Token: testToken, CAPEM: ca, Namespace: "from-pod"},
		},
		{
			name:   "namespace from the config file outside a pod",
			mutate: func(f map[string]string) { f[KeyNamespace] = "from-config\n" },
			nsFile: missingNSFile,
			want:   AgentConfig{HubURL: "https://eco.example.com", ClusterID: "c-7f3a9d", Token: testToken, CAPEM: ca, Namespace: "from-config"},
		},
		{
			name:   "default namespace, empty CA, http hub",
			mutate: func(f map[string]string) { f[KeyCACert] = ""; f[KeyHubURL] = "http://127.0.0.1:8080" },
			nsFile: "",
			want:   AgentConfig{HubURL: "http://127.0.0.1:8080", ClusterID: "c-7f3a9d", Token: testToken, Namespace: DefaultNamespace},
		},
		{
			name:    "missing hub-url",
			mutate:  func(f map[string]string) { delete(f, KeyHubURL) },
			wantErr: []string{"missing", "hub-url", `key "hub-url" of the eco-agent Secret`},
		},
		{
			name:    "missing cluster-id",
			mutate:  func(f map[string]string) { delete(f, KeyClusterID) },
			wantErr: []string{"missing", "cluster-id"},
		},
		{
			name:    "missing token",
			mutate:  func(f map[string]string) { delete(f, KeyToken) },
			wantErr: []string{"missing", "/token"},
		},
		{
			name:    "missing ca.crt",
			mutate:  func(f map[string]string) { delete(f, KeyCACert) },
			wantErr: []string{"missing", "ca.crt"},
		},
		{
			name:    "all missing, all named",
			mutate:  func(f map[string]string) { clear(f) },
			wantErr: []string{"hub-url", "cluster-id", "token", "ca.crt"},
		},
		{
			name:    "empty values",
			mutate:  func(f map[string]string) { f[KeyHubURL] = "\n"; f[KeyToken] = "  "; f[KeyClusterID] = "" },
			wantErr: []string{"hub-url is empty", "token is empty", "cluster-id is empty"},
		},
		{
			name:    "bad hub URL",
			mutate:  func(f map[string]string) { f[KeyHubURL] = "ftp://hub" },
			wantErr: []string{"hub-url", "scheme"},
		},
		{
			name:    "bad token",
			mutate:  func(f map[string]string) { f[KeyToken] = "secret" },
			wantErr: []string{"token: not an eco agent token"},
		},
		{
			name:    "bad CA",
			mutate:  func(f map[string]string) { f[KeyCACert] = "garbage" },
			wantErr: []string{"ca.crt: hub CA: not PEM"},
		},
		{
			name:    "bad namespace",
			mutate:  func(f map[string]string) { f[KeyNamespace] = "Not_A_Label" },
			nsFile:  missingNSFile,
			wantErr: []string{`namespace "Not_A_Label"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := validConfigFiles(t)
			tc.mutate(files)
			dir := writeConfigDir(t, files)
			got, err := LoadConfig(dir, tc.nsFile)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("LoadConfig = %+v, want an error", got)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				if strings.Contains(err.Error(), testToken) {
					t.Error("error contains the token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LoadConfig =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestLoadConfigDirReadsServiceAccountNamespace(t *testing.T) {
	dir := writeConfigDir(t, validConfigFiles(t))
	cfg, err := LoadConfigDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultNamespace
	if b, err := os.ReadFile(ServiceAccountNamespaceFile); err == nil {
		want = strings.TrimSpace(string(b)) // running in a pod
	}
	if cfg.Namespace != want {
		t.Errorf("namespace %q, want %q", cfg.Namespace, want)
	}
}

func TestLoadConfigUnreadableNamespaceFile(t *testing.T) {
	dir := writeConfigDir(t, validConfigFiles(t))
	// A directory cannot be read as a file: the error must surface, not
	// fall back silently to another namespace.
	if _, err := LoadConfig(dir, t.TempDir()); err == nil || !strings.Contains(err.Error(), "reading namespace") {
		t.Errorf("LoadConfig with a directory as namespace file: %v", err)
	}
}
