package event

import (
	"strings"
	"testing"
)

func TestIsSensitiveKey(t *testing.T) {
	for key, want := range map[string]bool{
		"password": true, "user_password": true, "NewPassword": true, "mfaCode": true, "mfa_code": true,
		"client-secret": true, "token": true, "csrf_token": true, "api_key": true, "apiKey": true,
		"private.key": true, "otp": true, "pin": true,
		"tokens_used": false, "rows": false, "spin": false, "key_id": false, "secret_id": false,
		"query": false, "shotp": false, "pinned": false,
		// Found by an audit: separators other than _ - . (CEF labels have
		// spaces), trailing digits, non-ASCII characters, unlisted names.
		"MFA Code": true, "Private Key": true, "API Key": true, "TOTP Code": true, "Pass Phrase": true,
		"mfa code": true, "password1": true, "password:": true, "pass\u200bword": true, "otp_code": true,
		"pin_code": true, "secret_key": true, "aws_secret_access_key": true, "user credentials": true,
		"session_cookie": true, "Authorization": true, "passcode": true,
		"x" + strings.Repeat("y", 200) + "_password": true,
		"cookie_consent": false, "credential_id": false, "authorization_mode": false, "spincode": false,
		"": false, "1234": false, "rows_2": false,
	} {
		if got := IsSensitiveKey(key); got != want {
			t.Errorf("IsSensitiveKey(%q) = %v, want %v", key, got, want)
		}
	}
}
