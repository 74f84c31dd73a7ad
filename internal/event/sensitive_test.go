package event

import "testing"

func TestIsSensitiveKey(t *testing.T) {
	for key, want := range map[string]bool{
		"password": true, "user_password": true, "NewPassword": true, "mfaCode": true, "mfa_code": true,
		"client-secret": true, "token": true, "csrf_token": true, "api_key": true, "apiKey": true,
		"private.key": true, "otp": true, "pin": true,
		"tokens_used": false, "rows": false, "spin": false, "key_id": false, "secret_id": false,
		"query": false, "shotp": false, "pinned": false,
	} {
		if got := IsSensitiveKey(key); got != want {
			t.Errorf("IsSensitiveKey(%q) = %v, want %v", key, got, want)
		}
	}
}
