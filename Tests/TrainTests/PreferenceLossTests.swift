import Foundation
import Testing
import Train

@Suite struct PreferenceLossTests {
    @Test func dpoValuesAndGradients() {
        // Equal log-ratios: loss log 2, gradients -+beta/2.
        let even = dpoLoss(chosenLogRatio: 1.3, rejectedLogRatio: 1.3, beta: 0.1)
        #expect(abs(even.loss - log(2)) < 1e-12)
        #expect(abs(even.dChosen + 0.05) < 1e-12 && abs(even.dRejected - 0.05) < 1e-12)
        // Far apart: stable, no overflow.
        let far = dpoLoss(chosenLogRatio: -5000, rejectedLogRatio: 5000, beta: 0.1)
        #expect(far.loss.isFinite && abs(far.loss - 1000) < 1e-9)
        let h = 1e-6
        for (w, l) in [(0.7, -0.2), (-3.0, 2.5), (12.0, 1.0)] {
            let g = dpoLoss(chosenLogRatio: w, rejectedLogRatio: l, beta: 0.3)
            let fw =
                (dpoLoss(chosenLogRatio: w + h, rejectedLogRatio: l, beta: 0.3).loss
                    - dpoLoss(chosenLogRatio: w - h, rejectedLogRatio: l, beta: 0.3).loss) / (2 * h)
            let fl =
                (dpoLoss(chosenLogRatio: w, rejectedLogRatio: l + h, beta: 0.3).loss
                    - dpoLoss(chosenLogRatio: w, rejectedLogRatio: l - h, beta: 0.3).loss) / (2 * h)
            #expect(abs(fw - g.dChosen) < 1e-8 && abs(fl - g.dRejected) < 1e-8)
        }
    }

    @Test func ktoValuesAndGradients() {
        let d = ktoLoss(logRatio: 0.4, desirable: true, z0: 0.4)
        #expect(abs(d.loss - 0.5) < 1e-12)
        // A negative KL estimate is clamped to zero.
        #expect(
            ktoLoss(logRatio: 1, desirable: false, z0: -3).loss == ktoLoss(logRatio: 1, desirable: false, z0: 0).loss)
        let h = 1e-6
        for desirable in [true, false] {
            for r in [-4.0, -0.3, 0.0, 2.2, 9.0] {
                let g = ktoLoss(logRatio: r, desirable: desirable, z0: 0.5, beta: 0.4, lambdaD: 1.3, lambdaU: 0.7)
                let fd =
                    (ktoLoss(logRatio: r + h, desirable: desirable, z0: 0.5, beta: 0.4, lambdaD: 1.3, lambdaU: 0.7).loss
                        - ktoLoss(logRatio: r - h, desirable: desirable, z0: 0.5, beta: 0.4, lambdaD: 1.3, lambdaU: 0.7)
                        .loss) / (2 * h)
                #expect(abs(fd - g.dLogRatio) < 1e-8, "desirable \(desirable) r \(r)")
                // Raising the log-ratio lowers the loss of a desirable response and raises an undesirable one's.
                #expect(desirable ? g.dLogRatio < 0 : g.dLogRatio > 0)
            }
        }
    }
}
